"""Chinese personal names in free text, without a model: a surname list plus context.

A name is a common surname (about 170 single and the common compound ones, ~94% of
people) and one or two given-name characters, reported only where notes put names:

* after a role word: ``老人王秀英``, ``女儿李娟``, ``联系人：张建国``, ``护理员陈红``;
* before a title: ``王先生``, ``李秀英阿姨``, ``周奶奶`` (the surname alone counts);
* before a reporting verb or relation: ``王秀英反映``, ``张建国家属``, ``陈红来电``;
* at the start of a sentence or after a colon, followed by punctuation:
  ``王秀英（身份证...）``, ``核对身份：张建国，...``.

Given-name characters exclude function words and the characters that typically
follow a name (``今``, ``反``, ``家``, ``手``...), so that ``黄翠今日`` yields ``黄翠``.
Common words beginning with a surname character (``高血压``, ``安全``, ``周末``,
``孙子``...) are never names.
"""

from __future__ import annotations

from typing import ClassVar

from presidio_analyzer import Pattern

from masking.recognizers._common import ChinesePatternRecognizer, alternation, han_except

SINGLE_SURNAMES = (
    "王李张刘陈杨黄吴赵周徐孙马朱胡林郭何高罗郑梁谢宋唐许邓冯韩曹曾彭萧肖蔡潘田董袁余叶蒋杜苏魏程吕丁"
    "沈任姚卢傅钟姜崔谭廖范汪陆金石戴贾韦夏邱方侯邹熊孟秦白江阎闫薛尹段雷黎史龙陶贺顾毛郝龚邵万钱严"
    "赖覃洪武莫孔汤向常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚"
    "符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁鲍穆车宗卓蔺管鞠闵戚娄窦骆靳巩牟丛奚隋艾柴郁缪瞿"
)
COMPOUND_SURNAMES = (
    "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "令狐", "慕容", "夏侯", "端木", "轩辕",
    "司徒", "长孙", "宇文", "南宫", "百里", "呼延", "澹台",
)  # fmt: skip
SURNAME = f"(?:{alternation(COMPOUND_SURNAMES)}|[{SINGLE_SURNAMES}])"
# Characters that end a name: function words, what notes write right after a name.
STOP = (
    "的了是在和与及或也都就还又很不没有无今昨已于被把对向从到给让说称反来去电话号码手机身份证"
    "家属老人女儿子先士阿姨爷奶婆伯叔舅姑等要需请帮可以将会能为因所其这那些个们此次应该再并但却而则即"
    "腿疼痛病血压通知告联系陪同独居情况本日"
)
GIVEN = han_except(STOP)
# Common words that begin with a surname character: never names.
NOT_NAMES = (
    "高血压", "高血脂", "高血糖", "高龄", "高温", "高兴", "高度", "高压", "高达", "高于",
    "安全", "安排", "安装", "安静", "安置", "安心", "安慰", "安抚", "方便", "方面", "方法", "方案", "方式",
    "方向", "白天", "白内障", "白色", "常规", "常常", "常用", "康复", "关注", "关心", "关爱", "关节", "关于",
    "关门", "关闭", "周末", "周围", "周一", "周二", "周三", "周四", "周五", "周六", "周日", "周岁",
    "孙子", "孙女", "马上", "严重", "严格", "任何", "任务", "许多", "曾经", "陆续", "程度", "包括", "包装",
    "成功", "成人", "成为", "文化", "文件", "于是", "向来", "单独", "单位", "金额", "温度", "温水", "余额",
    "钱款", "舒服", "舒适", "夏天", "夏季", "申请", "申报", "左右", "左腿", "左手", "毕业", "凌晨", "范围",
    "牛奶", "易怒", "符合", "尚未", "万元", "万一", "齐全", "施工", "龙头", "颜色", "焦虑", "毛病", "毛巾",
    "石膏", "黄色", "章程", "宁可", "季节", "谷物", "梅雨", "童年", "纪律", "车辆", "管理", "管道", "宗教",
    "江湾", "殷行", "翟家", "邵家", "顾客", "戴上", "余下", "甘心", "兰花", "艾灸", "艾草", "柴米", "郁闷",
    # places
    "江苏", "江西", "江北", "江南", "苏州", "苏北", "常州", "温州", "宁波", "武汉", "徐州", "安徽", "安庆",
    "金山", "黄浦", "杨浦", "武进", "宁夏", "广州", "关外", "台湾", "香港",
)  # fmt: skip
NOT_NAME = f"(?!{alternation(NOT_NAMES)})"
FIRST_CHARS = "".join(sorted(set(SINGLE_SURNAMES) | {s[0] for s in COMPOUND_SURNAMES}))
NAME = f"{NOT_NAME}{SURNAME}"

ROLES = (
    "老人", "长者", "老伯", "老太", "家属", "亲属", "联系人", "紧急联系人", "监护人", "代理人", "申请人",
    "来电人", "姓名", "女儿", "儿子", "儿媳", "女婿", "孙子", "孙女", "外孙", "外孙女", "侄子", "侄女",
    "老伴", "配偶", "丈夫", "妻子", "爱人", "哥哥", "姐姐", "弟弟", "妹妹", "邻居", "护理员", "护工",
    "保姆", "社工", "志愿者", "医生", "护士", "网格员", "楼组长", "居委干部",
)  # fmt: skip
TITLES = (
    "先生", "女士", "小姐", "老师", "师傅", "阿姨", "爷爷", "奶奶", "阿婆", "外婆", "外公", "老伯", "大爷",
    "大妈", "伯伯", "叔叔", "阿公", "同志", "老先生", "老太太", "医生", "大夫", "护士", "主任", "书记",
)  # fmt: skip
FOLLOWERS = ("反映", "来电", "致电", "家属", "本人", "之女", "之子", "的女儿", "的儿子", "的家属", "老伴")
SENTENCE_START = "(?<=^|[。；;！!？?：:])"
AFTER_LEAD = "(?=[（(，,、；;。 ])"


class PersonNameRecognizer(ChinesePatternRecognizer):
    ENTITY = "PERSON"
    PLACEHOLDER = "<姓名>"
    # One pattern (the regex module scans the text once per pattern): the cheap first-character
    # test, then the four places a name is written.
    PATTERNS: ClassVar[list[Pattern]] = [
        Pattern(
            "name_in_context",
            f"(?=[{FIRST_CHARS}])(?:"
            f"(?<={alternation(ROLES)}[：: ]?){NAME}{GIVEN}{{1,2}}"  # after a role: 老人王秀英
            f"|{NAME}{GIVEN}{{0,2}}(?={alternation(TITLES)})"  # before a title: 王先生
            f"|{NAME}{GIVEN}{{1,2}}(?={alternation(FOLLOWERS)})"  # before a verb: 王秀英反映
            f"|{SENTENCE_START}{NAME}{GIVEN}{{1,2}}{AFTER_LEAD}"  # leading: 王秀英（...
            ")",
            0.6,
        ),
    ]
    CONTEXT: ClassVar[list[str]] = [*ROLES, *TITLES, *FOLLOWERS]
    CANDIDATE = (
        f"{alternation(ROLES)}[：: ]?{SURNAME}"
        f"|{SURNAME}[\u4e00-\u9fff]{{0,2}}{alternation(TITLES + FOLLOWERS)}"
        f"|(?:^|[。；;！!？?：:\n]){SURNAME}"  # Polars' ^ is the start of the text only
    )
